"""Tickets as text: reading files (columns, validation, labels), the rules for texts and head
names, mail cleaning and masking, and generated sample tickets. Imports no other room."""
