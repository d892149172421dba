-- The SSD implementation an attempt's trainer actually ran (tensor or fused: `train.ssd: auto`
-- is resolved on the worker's device), from the worker's start/resume event.
ALTER TABLE attempts ADD COLUMN ssd TEXT;
