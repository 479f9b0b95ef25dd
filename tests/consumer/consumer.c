/* consumer.c: a program that embeds Trinity through its installed public API alone (trinity.h, libtrinity), built by
 * tests/test_install.sh once with find_package(trinity) and once with pkg-config.
 *
 *   consumer [MODEL]     (default synthetic:tiny): greedy text after a prompt, then checks on what the API returned */
#include <stdio.h>
#include <string.h>

#include <trinity.h>

static int print_piece(const char *piece, size_t len, int token, void *user) {
    (void)token;
    fwrite(piece, 1, len, stdout);
    *(size_t *)user += len;
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "synthetic:tiny";
    trinity_model_params mp = trinity_model_params_default();
    mp.device = TRINITY_DEVICE_CPU;
    trinity_model *model = NULL;
    if (trinity_model_open(path, &mp, &model) != TRINITY_OK) {
        fprintf(stderr, "consumer: %s\n", trinity_last_error());
        return 1;
    }
    trinity_session_params sp = trinity_session_params_default();
    sp.temperature = 0.0f;
    trinity_session *session = NULL;
    int ids[64], n_ids = 0, n_generated = 0;
    size_t bytes = 0;
    int ok = trinity_session_new(model, &sp, &session) == TRINITY_OK &&
             trinity_tokenize(model, "hello world", 11, 1, ids, 64, &n_ids) == TRINITY_OK && n_ids >= 2 &&
             ids[0] == trinity_token_bos(model) && trinity_session_feed(session, ids, n_ids, NULL) == TRINITY_OK &&
             trinity_session_logits(session) != NULL &&
             trinity_session_generate(session, 16, print_piece, &bytes, &n_generated) == TRINITY_OK;
    printf("\n");
    if (!ok) {
        fprintf(stderr, "consumer: %s\n", trinity_last_error());
    } else if (n_generated < 1 || trinity_session_n_past(session) != n_ids + n_generated - 1) {
        fprintf(stderr, "consumer: %d tokens generated, %d positions filled\n", n_generated,
                trinity_session_n_past(session));
        ok = 0;
    } else {
        printf("consumer: trinity %s, %s: %d prompt tokens, %d generated (%zu bytes) on %s\n", trinity_version(),
               trinity_model_name(model), n_ids, n_generated, bytes, trinity_session_device(session));
    }
    trinity_session_free(session);
    trinity_model_free(model);
    return ok ? 0 : 1;
}
