//! Test-only programs (see `src/bin`); nothing to use from here.
