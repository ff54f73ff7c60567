"""Template plugin: a decoupled cross-modal contrastive objective (DCL, Yeh et al. 2022)."""
