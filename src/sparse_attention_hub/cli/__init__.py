"""The `sah` command line: `sah run`, `sah status`, `sah list`."""
