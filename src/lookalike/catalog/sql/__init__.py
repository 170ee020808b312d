"""The shared SQL catalog: one implementation over per-database dialects, and the schema."""
