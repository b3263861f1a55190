<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Time;

/** Where "now" comes from: the system, or a fixed instant for tests and conformance cases. */
interface Clock
{
    public function now(): Instant;
}
