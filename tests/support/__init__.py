"""Helpers shared by phasegate's tests."""
