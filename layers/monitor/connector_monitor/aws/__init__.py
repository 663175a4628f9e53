"""Adapters at the AWS edge: each module wraps one AWS service for one job."""
