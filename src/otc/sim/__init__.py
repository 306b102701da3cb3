"""A deterministic discrete-event simulator of the market overlay: the real replication core
(core/replication.py), book and desk of every peer, in virtual time, over a modelled network (latency
20–80 ms per link, 1 % loss, partitions) with churn. ``python -m otc.sim --peers 1000`` (``make sim``)."""
