//! (placeholder module; being written)
