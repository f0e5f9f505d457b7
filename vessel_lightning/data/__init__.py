"""Data layer: raw eye photos and annotations → prepared folders → training batches."""
