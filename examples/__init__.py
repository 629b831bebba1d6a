"""Demo relying parties for Yitong (run by `yitong demo`; see README)."""
