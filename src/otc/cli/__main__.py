import contextlib

from .commands import main

with contextlib.suppress(KeyboardInterrupt):
    main()
