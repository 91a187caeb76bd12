//! See the module line in `silent_loss.rs`.
