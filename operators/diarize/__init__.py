"""Speaker diarization: CAM++ speaker embeddings (numpy, no torch) and clustering with an
unknown number of speakers, whole-recording or streamed block by block."""
from operators.diarize.diarizer import DiarizationStream, DiarizeConfig, Diarizer
from operators.diarize.rttm import Turn, read_rttm, read_uem, write_rttm, write_uem

__all__ = ["DiarizationStream", "DiarizeConfig", "Diarizer", "Turn", "read_rttm", "read_uem",
           "write_rttm", "write_uem"]
