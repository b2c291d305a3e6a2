"""Base-network weights: the README says where to get them; ``convert_vgg16`` builds the reduced-fc VGG16."""
