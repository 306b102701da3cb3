"""Tests too heavy for `make test` on a 2-core machine: run with `make scale`."""
