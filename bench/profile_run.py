"""Run the gateway in-process under pyinstrument; SIGUSR1 writes the profile and exits at once.

    python -m bench.profile_run OUT_PREFIX run -c gateway.yaml

(The gateway's own SIGTERM shutdown may take long while sinks drain; the profile must not wait.)"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pyinstrument import Profiler

from gateway.cli.main import main as gateway_main


def main() -> None:
    prefix = Path(sys.argv[1])
    profiler = Profiler(interval=0.005, async_mode="disabled")

    def dump(signum: int, frame: object) -> None:
        session = profiler.stop()
        from pyinstrument.renderers import ConsoleRenderer

        tree = ConsoleRenderer(unicode=False, color=False, show_all=False).render(session)
        flat = ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self").render(session)
        prefix.with_name(prefix.name + "-tree.txt").write_text(tree)
        prefix.with_name(prefix.name + "-flat.txt").write_text(flat)
        os._exit(0)

    signal.signal(signal.SIGUSR1, dump)
    profiler.start()
    sys.exit(gateway_main(sys.argv[2:]))


if __name__ == "__main__":
    main()
