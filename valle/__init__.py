"""The VALL-E toolkit: command line, data preparation, training, evaluation, conversion.

The model itself lives in the three top-level modules (`configuration_valle`, `modeling_valle`,
`processing_valle`) so that they can travel to the Hub as remote code; this package holds the
tools around it and is never uploaded.
"""

__version__ = "0.1.0"
