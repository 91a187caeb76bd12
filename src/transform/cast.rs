//! Casts with PostgreSQL's input-function semantics.
