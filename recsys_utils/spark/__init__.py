"""The Spark backend: data preparation and ALS training past one machine.

Nothing here imports PySpark at import time (a test checks it): :func:`session.spark_session`
imports it when a Spark run starts. Selected with ``-p backend spark`` (01_eda, 02_encoding)
and ``-p trainer spark_als`` (03_training).
"""
