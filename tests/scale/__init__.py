"""150 peer processes (in `make test`; `make scale` runs them alone, printing their figures)."""
