"""Feed-forward style transfer (Johnson et al. 2016): a network trained once per style stylises images in one pass."""
