"""Benchmarks: each module times one job of storefunnel beside a well-known reference doing the same job."""
