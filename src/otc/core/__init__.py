"""The pure core: no sockets, clocks, files or threads. Time and randomness are passed in."""
