<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/** How the Client waits between attempts; replaced in tests so they do not wait. */
interface Sleeper
{
    public function sleep(float $seconds): void;
}
