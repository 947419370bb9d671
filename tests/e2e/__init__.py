"""End-to-end tests: the production server (`make serve`) over HTTP, against the fake upstream."""
