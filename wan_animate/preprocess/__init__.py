"""Driving-video preprocessing: person detection, whole-body pose, skeleton video, face crops, masks, background."""
