<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Time;

final class SystemClock implements Clock
{
    public function now(): Instant
    {
        $micro = microtime(false);
        [$fraction, $seconds] = explode(' ', $micro);
        return Instant::fromUnix((int) $seconds, (int) round(((float) $fraction) * 1e6) * 1000);
    }
}
