<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Http;

use Autoheal\Sdk\Http\Sleeper;

final class RecordingSleeper implements Sleeper
{
    /** @var list<float> */
    public array $slept = [];

    public function sleep(float $seconds): void
    {
        $this->slept[] = $seconds;
    }
}
