<?php

declare(strict_types=1);

namespace Autoheal\Sdk;

/** The SDK's own version (sent as User-Agent and in the heartbeat's server_info). */
final class Version
{
    public const SDK = '1.0.0';

    private function __construct()
    {
    }
}
