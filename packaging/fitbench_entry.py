"""Entry point of the frozen FitBench build (PyInstaller's analysis starts here).

A frozen app has no separate Python interpreter: sys.executable is this very program. FitBench
starts helper processes the way it would with a normal Python: the llama.cpp device probe as
`sys.executable -P -c CODE` (fitbench.core.hardware.llama_devices) and every benchmark worker as
`sys.executable -m fitbench.core.bench.worker - --ack` (fitbench.core.bench.runner), so that a
llama.cpp crash or hang never takes the app down. This entry point therefore also understands
those two interpreter forms, the way multiprocessing.freeze_support() does for its own children;
everything else goes to fitbench's CLI.
"""

from __future__ import annotations

import runpy
import sys

# Interpreter flags that may precede -c/-m; they change nothing that matters in a frozen build
# (-P: no script directory on sys.path, -u: the worker flushes its own output).
_IGNORED_FLAGS = frozenset({"-P", "-u", "-B", "-s", "-E", "-I", "-O"})


def interpreter_call(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """("-c", code, rest) or ("-m", module, rest) when argv asks for Python itself, else None."""
    index = 0
    while index < len(argv) and argv[index] in _IGNORED_FLAGS:
        index += 1
    if index + 1 < len(argv) and argv[index] in ("-c", "-m"):
        return argv[index], argv[index + 1], argv[index + 2 :]
    return None


def run_interpreter_call(mode: str, target: str, rest: list[str]) -> None:
    if mode == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [target, *rest]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


def main() -> int:
    call = interpreter_call(sys.argv[1:])
    if call is not None:
        run_interpreter_call(*call)
        return 0
    from fitbench.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
