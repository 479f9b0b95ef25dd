#!/usr/bin/env python3
"""cuda_emu_rewrite.py IN.cu OUT.cpp: a CUDA source as C++ for the CUDA emulator (tests/cuda_emulator).

Two rewrites, the only CUDA syntax a C++ compiler cannot take:
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  trn_emu::launcher(kernel, "kernel", grid, block, ...)(args)
  extern __shared__ [__align__(N)] T name[];        ->  T *const name = static_cast<T *>(trn_emu::dynamic_shared());
A `#line` directive keeps the compiler's messages pointing at IN. Exits 1 with the line where a `<<<` or an
`extern __shared__` is left that it could not rewrite."""
import os
import re
import sys


def kernel_start(text, end):
    """Where the kernel expression ending at `end` (exclusive) begins: an identifier, qualified names and one
    template argument list allowed (gemv_float_kernel<T, VEC>, ns::kernel<true>)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == '>':
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == '>':
                depth += 1
            elif text[i] == '<':
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in '_:'):
        i -= 1
    return i


def split_config(text, start):
    """The text between <<< (ending at start) and >>>, and the index after >>>."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith('>>>', i) and depth == 0:
            return text[start:i], i + 3
        c = text[i]
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        i += 1
    raise ValueError('unterminated <<<')


def rewrite(text):
    out = []
    pos = 0
    while True:
        at = text.find('<<<', pos)
        if at < 0:
            out.append(text[pos:])
            break
        begin = kernel_start(text, at)
        kernel = text[begin:at].strip()
        if not kernel:
            raise ValueError('no kernel before <<< at line %d' % (text.count('\n', 0, at) + 1))
        config, after = split_config(text, at + 3)
        out.append(text[pos:begin])
        name = re.sub(r'\s+', ' ', kernel)
        out.append('trn_emu::launcher(%s, "%s", %s)' % (kernel, name, config.strip()))
        pos = after
    text = ''.join(out)
    shared = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+(\w+)\s*\[\s*\]\s*;')
    text = shared.sub(lambda m: '%s *const %s = static_cast<%s *>(trn_emu::dynamic_shared());'
                      % (m.group(1), m.group(2), m.group(1)), text)
    for bad in ('<<<', 'extern __shared__'):
        if bad in text:
            raise ValueError('"%s" left at line %d' % (bad, text[:text.find(bad)].count('\n') + 1))
    return text


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: cuda_emu_rewrite.py IN.cu OUT.cpp')
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding='utf-8') as f:
        text = f.read()
    try:
        body = rewrite(text)
    except ValueError as e:
        print('%s: %s' % (src, e), file=sys.stderr)
        sys.exit(1)
    with open(dst + '.tmp', 'w', encoding='utf-8') as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(body)
    os.replace(dst + '.tmp', dst)


if __name__ == '__main__':
    main()
