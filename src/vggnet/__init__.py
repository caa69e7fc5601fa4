"""vggnet: the system of Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (ICLR 2015), end to end."""
__version__ = "0.1.0"
