"""Hit quality: the hit policy (categories, guards, a calibrated model), its evaluation and
calibration. Pure logic, shared by the shards and the `semcache eval/calibrate` tools."""
