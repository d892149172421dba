//! Sweep YAML: the spec (grid, zip, derived, seeds, evals, resources, retries, backend) and its
//! expansion into fully resolved, hashed job configs.
