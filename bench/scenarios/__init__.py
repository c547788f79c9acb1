"""The benchmark's scenarios, one module per kind; `bench.run` picks and prints them."""
