<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Time;

/**
 * A point in time with nanosecond precision, parsed from RFC 3339 UTC only
 * (`2026-12-02T10:00:00Z`, optional fraction, `Z` or `+00:00`). The protocol's times are
 * UTC; another offset, a lower-case `t`/`z`, a leap second or an impossible date is refused
 * rather than interpreted.
 */
final class Instant
{
    private const PATTERN = '/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)$/D';

    private int $seconds;
    private int $nanos;

    private function __construct(int $seconds, int $nanos)
    {
        $this->seconds = $seconds;
        $this->nanos = $nanos;
    }

    public static function parse(string $text): self
    {
        if (preg_match(self::PATTERN, $text, $m) !== 1) {
            throw new InvalidTimestamp('not an RFC 3339 UTC timestamp');
        }
        [$year, $month, $day, $hour, $minute, $second] = array_map('intval', array_slice($m, 1, 6));
        if ($month < 1 || $month > 12 || $day < 1 || $day > self::daysInMonth($year, $month)
            || $hour > 23 || $minute > 59 || $second > 59) {
            throw new InvalidTimestamp('not a valid date and time');
        }
        $nanos = isset($m[7]) && $m[7] !== '' ? (int) str_pad($m[7], 9, '0') : 0;
        $days = self::daysFromCivil($year, $month, $day);
        return new self($days * 86400 + $hour * 3600 + $minute * 60 + $second, $nanos);
    }

    public static function fromUnix(int $seconds, int $nanos = 0): self
    {
        return new self($seconds, $nanos);
    }

    public function unixSeconds(): int
    {
        return $this->seconds;
    }

    public function compare(self $other): int
    {
        return [$this->seconds, $this->nanos] <=> [$other->seconds, $other->nanos];
    }

    public function isBefore(self $other): bool
    {
        return $this->compare($other) < 0;
    }

    public function plusSeconds(int $seconds): self
    {
        return new self($this->seconds + $seconds, $this->nanos);
    }

    /** `2026-12-02T10:00:00Z` (fraction only when there is one). */
    public function format(): string
    {
        $text = gmdate('Y-m-d\TH:i:s', $this->seconds);
        if ($this->nanos !== 0) {
            $text .= '.' . rtrim(str_pad((string) $this->nanos, 9, '0', STR_PAD_LEFT), '0');
        }
        return $text . 'Z';
    }

    private static function daysInMonth(int $year, int $month): int
    {
        if ($month === 2) {
            $leap = ($year % 4 === 0 && $year % 100 !== 0) || $year % 400 === 0;
            return $leap ? 29 : 28;
        }
        return in_array($month, [4, 6, 9, 11], true) ? 30 : 31;
    }

    /** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
    private static function daysFromCivil(int $y, int $m, int $d): int
    {
        $y -= $m <= 2 ? 1 : 0;
        $era = intdiv($y >= 0 ? $y : $y - 399, 400);
        $yoe = $y - $era * 400;
        $doy = intdiv(153 * ($m + ($m > 2 ? -3 : 9)) + 2, 5) + $d - 1;
        $doe = $yoe * 365 + intdiv($yoe, 4) - intdiv($yoe, 100) + $doy;
        return $era * 146097 + $doe - 719468;
    }
}
