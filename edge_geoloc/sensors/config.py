"""Configuration of the GNSS input (NMEA 0183 over serial or from a log file)."""

from __future__ import annotations

from dataclasses import dataclass, field

# User equivalent range error (1 sigma, metres) per GGA fix quality, for ``sigma_h = HDOP * UERE`` when the
# receiver sends no GST sigmas. Rough textbook values: SPS ~4 m, DGPS/SBAS ~1.5 m, RTK float ~0.5 m,
# RTK fixed ~0.05 m, dead reckoning (6) is much worse than any satellite fix.
DEFAULT_UERE_M_BY_QUALITY: dict[int, float] = {1: 4.0, 2: 1.5, 3: 4.0, 4: 0.05, 5: 0.5, 6: 20.0, 8: 4.0}


@dataclass(frozen=True)
class GnssConfig:
    """How NMEA sentences become :class:`edge_geoloc.types.GnssFix` and what is rejected.

    An *epoch* is the set of sentences a receiver sends for one UTC time (GGA, RMC, GST share it; GSA has no
    time and joins the current epoch). An epoch is turned into a fix as soon as every type in
    ``epoch_sentences`` has arrived, otherwise when the next epoch starts or the input goes quiet. With
    ``learn_epoch_sentences`` the expected set then follows what the receiver really sends (an epoch closed
    by the next one shows it; a type arriving after its epoch was emitted is expected again).
    """

    port: str = "/dev/ttyUSB0"
    baud_rate: int = 115200
    read_timeout_s: float = 0.2  # one serial read waits at most this long
    silence_timeout_s: float = 2.0  # no byte for this long: flush the pending epoch and count a timeout
    reconnect_interval_s: float = 0.5  # first wait before reopening an unplugged port
    reconnect_max_interval_s: float = 5.0  # the wait doubles up to this
    fix_queue_size: int = 64  # fixes kept for `SerialGnssSource.get` (oldest dropped, counted)
    epoch_sentences: tuple[str, ...] = ("GGA", "RMC", "GST")
    learn_epoch_sentences: bool = True
    max_sentence_len: int = 120  # NMEA says 82; some receivers send longer proprietary lines
    uere_m_by_quality: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_UERE_M_BY_QUALITY))
    default_uere_m: float = 5.0  # for a fix quality missing from the table
    vertical_factor: float = 2.0  # sigma_up = factor * HDOP * UERE when no VDOP (GSA) is known
    unknown_sigma_m: float = 50.0  # every axis when neither GST nor HDOP is available (covariance UNKNOWN)
    accepted_fix_qualities: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    max_time_jump_s: float = 10.0  # a forward step larger than this between epochs is a jump
    resync_epochs: int = 3  # this many consecutive, mutually consistent epochs confirm a new time base

    def __post_init__(self) -> None:
        for name in ("read_timeout_s", "silence_timeout_s", "reconnect_interval_s", "reconnect_max_interval_s",
                     "default_uere_m", "vertical_factor", "unknown_sigma_m", "max_time_jump_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GnssConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.baud_rate <= 0 or self.fix_queue_size <= 0 or self.resync_epochs <= 0:
            raise ValueError("GnssConfig.baud_rate, fix_queue_size and resync_epochs must be positive integers")
        unknown = sorted(set(self.epoch_sentences) - {"GGA", "RMC", "GST", "GSA"})
        if unknown or "GGA" not in self.epoch_sentences:
            raise ValueError(f"GnssConfig.epoch_sentences must include GGA and only GGA/RMC/GST/GSA, got "
                             f"{self.epoch_sentences}")
        if any(not v > 0 for v in self.uere_m_by_quality.values()):
            raise ValueError(f"GnssConfig.uere_m_by_quality values must be > 0, got {self.uere_m_by_quality}")
        if self.max_sentence_len < 16:
            raise ValueError(f"GnssConfig.max_sentence_len must be >= 16, got {self.max_sentence_len}")

    def uere_m(self, fix_quality: int) -> float:
        """UERE (1 sigma, m) used with HDOP for this GGA fix quality."""
        return float(self.uere_m_by_quality.get(fix_quality, self.default_uere_m))
