"""Test helpers: peer processes (from otc.launch) and polling with a deadline."""

from otc.launch import APIError, PeerProcess, book_state, http, start_all, wait_for

__all__ = ["APIError", "PeerProcess", "book_state", "http", "start_all", "wait_for"]
