<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Time;

final class FixedClock implements Clock
{
    private Instant $now;

    public function __construct(Instant $now)
    {
        $this->now = $now;
    }

    public static function at(string $rfc3339): self
    {
        return new self(Instant::parse($rfc3339));
    }

    public function now(): Instant
    {
        return $this->now;
    }
}
