"""Presentation: terminal tables, file exports and reports. Reads typed results, computes nothing."""
