"""Peer servers for side-by-side runs: same load generator, same scenario."""
