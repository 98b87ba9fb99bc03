"""Customer segmentation and cross-sell over what clv produces."""
