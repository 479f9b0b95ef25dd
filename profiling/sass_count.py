#!/usr/bin/env python3
"""sass_count.py: the static instruction count of the ternary kernels' inner loop, from their machine code.

Usage: profiling/sass_count.py [--arch sm_90] [--json FILE] [OBJECT ...]    (exit 77 where nvcc or cuobjdump is missing)
  OBJECT: a cubin or an object file with embedded device code (default: cuda/gemv_ternary.cu compiled here with
  nvcc -cubin for each --arch). Tools: nvcc, and cuobjdump and nvdisasm from the CUDA Toolkit or, where the toolkit
  lacks them, from PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm (installed into build-sass/tools on
  first use).

For every kernel whose code contains dp4a (IDP.4A), the row loop is the backward branch's range that holds the most
dp4a instructions, the shortest such range where several do (a range closed by the out-of-line fallback of a
divergent shuffle, which jumps back into the prologue, holds as many but is longer). Printed per kernel:
  loop      the loop's static instructions (every instruction between its head and its backward branch, so rarely
            taken paths inside it count too: an upper bound on what one iteration issues)
  dp4a      the dp4a instructions in it
  per_row   warp-instructions per row of 2048 weights (Trinity-1.1B's QKV/gate/up width; 512 code bytes in TQ2_0):
            loop * (dp4a a row needs) / dp4a. A TQ2_0 row needs 2048 / 4 / 32 = 16 warp-dp4a with all 32 lanes on
            4 weights each; TQ1_0 kernels give each code word of a block to a lane of a half-warp (13 of 16 lanes
            useful) and issue 9 dp4a per word (tq1_regs_isum), so a row of 8 blocks is 8 * 16 * 9 / 32 = 36. Kernels
            are told apart by name (Tq1 / tq1 in the name: TQ1_0).
  fma, alu  of those per row, the instructions that issue on the FMA-heavy pipe (IMAD, IMUL, IDP) and on the ALU
            pipe (integer adds, logic, shifts, permutes, compares, selects). On sm_80 and sm_90 each takes a warp
            instruction every second cycle per scheduler, so a loop issues no faster than max(per_row, 2 fma,
            2 alu) cycles per row: `bound` (FP32 adds and multiplies, which may take either FMA pipe, and the
            memory, shuffle and branch units are left out).
Nothing runs on a GPU: this is how the lean loop's gain is seen on a machine without one.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
BRANCH = re.compile(r"^(@!?U?P\w+\s+)?BRA(\.\w+)*\s+(?:!?U?P\d,\s*)?0x([0-9a-f]+)")


def find_tool(name, package):
    """name from PATH, else from PyPI's package installed into build-sass/tools (on first use)."""
    tool = shutil.which(name)
    if tool:
        return tool
    work = os.path.join(ROOT, "build-sass", "tools", package)  # one folder per package: pip --target does not merge

    def installed():
        for base, _, files in os.walk(work):
            if name in files:
                return os.path.join(base, name)
        return None

    if installed():
        return installed()
    os.makedirs(work, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", work, package],
                       capture_output=True, text=True)
    if installed():
        return installed()
    print(f"sass_count: SKIPPED: no {name} (CUDA Toolkit or PyPI's {package}): " +
          (r.stderr.strip().splitlines() or ["pip gave no reason"])[-1])
    sys.exit(77)


def demangle(names):
    tool = shutil.which("c++filt")
    if not tool:
        return names
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def functions(sass_text):
    """{mangled name: [(address, instruction text)]}"""
    funcs, name = {}, None
    for line in sass_text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            funcs[name] = []
            continue
        m = INSTR.search(line)
        if name and m:
            funcs[name].append((int(m.group(1), 16), m.group(2).strip()))
    return funcs


def row_loop(code):
    """(head, tail, instructions, dp4a) of the backward-branch range with the most dp4a, the shortest of those."""
    best = None
    for addr, text in code:
        m = BRANCH.match(text)
        if not m:
            continue
        target = int(m.group(3), 16)
        if target >= addr:
            continue
        body = [t for a, t in code if target <= a <= addr]
        dp4a = sum(1 for t in body if "IDP.4A" in t)
        if dp4a and (best is None or (dp4a, -len(body)) > (best[3], -best[2])):
            best = (target, addr, len(body), dp4a)
    return best


FMA_HEAVY = {"IMAD", "IMUL", "IDP"}
ALU = {"IADD3", "IADD", "LOP3", "LOP", "PRMT", "SHF", "SHL", "SHR", "LEA", "SEL", "ISETP", "IMNMX", "VIADD", "FSEL",
       "FSETP", "BMSK", "SGXT", "PLOP3", "MOV", "IABS", "FLO", "POPC", "BREV"}


def opcode(text):
    """The opcode of one SASS instruction, without its predicate and modifiers: '@!P0 IMAD.WIDE.U32 ...' -> 'IMAD'."""
    words = text.split()
    word = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    return word.split(".")[0]


def count(obj, cuobjdump):
    sass = subprocess.run([cuobjdump, "-sass", obj], capture_output=True, text=True)
    if sass.returncode != 0:
        sys.exit(f"sass_count: cuobjdump failed on {obj}: {sass.stderr.strip()}")
    funcs = functions(sass.stdout)
    names = list(funcs)
    rows = []
    for mangled, pretty in zip(names, demangle(names)):
        loop = row_loop(funcs[mangled])
        if not loop:
            continue
        head, tail, n, dp4a = loop
        tq1 = "tq1" in pretty.lower()
        need = 36 if tq1 else 16
        ops = [opcode(t) for a, t in funcs[mangled] if head <= a <= tail]
        fma = sum(1 for o in ops if o in FMA_HEAVY)
        alu = sum(1 for o in ops if o in ALU)
        per_row = n * need / dp4a
        rows.append({"kernel": pretty, "format": "TQ1_0" if tq1 else "TQ2_0", "loop_instructions": n,
                     "dp4a": dp4a, "per_row_2048": round(per_row, 1),
                     "fma_per_row": round(fma * need / dp4a, 1), "alu_per_row": round(alu * need / dp4a, 1),
                     "bound_cycles_per_row": round(max(per_row, 2 * fma * need / dp4a, 2 * alu * need / dp4a), 1),
                     "loop": f"0x{head:x}-0x{tail:x}"})
    return rows


def short(name):
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    name = re.sub(r"\(ternary_params\)|\(ternary_lean_params\)", "", name)
    return name[:96]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="sm_XX to compile for (default sm_90 and sm_80)")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("objects", nargs="*")
    args = ap.parse_args()
    cuobjdump = find_tool("cuobjdump", "nvidia-cuda-cuobjdump")
    nvdisasm = find_tool("nvdisasm", "nvidia-cuda-nvdisasm")  # cuobjdump -sass runs it
    os.environ["PATH"] = os.path.dirname(nvdisasm) + os.pathsep + os.environ.get("PATH", "")
    targets = []
    tmp = tempfile.mkdtemp(prefix="sass_count.")
    if args.objects:
        targets = [(os.path.basename(o), o) for o in args.objects]
    else:
        if not shutil.which("nvcc"):
            print("sass_count: SKIPPED: no nvcc on this machine (give a cubin or object file instead)")
            sys.exit(77)
        for arch in args.arch or ["sm_90", "sm_80"]:
            out = os.path.join(tmp, f"gemv_ternary.{arch}.cubin")
            r = subprocess.run(["nvcc", "-std=c++17", "-O3", "-cubin", f"-arch={arch}", "-I", ROOT,
                                "-DTRN_HAVE_CUDA=1", "-o", out, os.path.join(ROOT, "cuda", "gemv_ternary.cu")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"sass_count: nvcc failed for {arch}: {r.stderr.strip()[:400]}")
            targets.append((arch, out))
    report = {}
    for label, obj in targets:
        rows = count(obj, cuobjdump)
        report[label] = rows
        print(f"== {label}: row loops of the dp4a kernels (static warp-instructions)")
        print(f"{'loop':>5} {'dp4a':>5} {'per 2048-weight row':>20} {'fma':>6} {'alu':>6} {'bound':>6}  kernel")
        for r in sorted(rows, key=lambda r: r["kernel"]):
            print(f"{r['loop_instructions']:5d} {r['dp4a']:5d} {r['per_row_2048']:20.1f} {r['fma_per_row']:6.1f} "
                  f"{r['alu_per_row']:6.1f} {r['bound_cycles_per_row']:6.1f}  {short(r['kernel'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
