"""ImageNet's per-channel RGB mean and std (torchvision's values for its ImageNet weights), the one
home of these constants: every task that normalises like an ImageNet backbone imports them."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
