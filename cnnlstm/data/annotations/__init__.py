"""Annotation files: dataset SPECs (folders, CSV and text lists, UCF101 splits, Kinetics CSVs),
segment files and caption files, read into lists of videos with their labels."""
