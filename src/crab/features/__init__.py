"""Audio and visual feature extraction that runs before the encoders (BEATs fbank)."""
