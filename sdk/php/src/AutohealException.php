<?php

declare(strict_types=1);

namespace Autoheal\Sdk;

/**
 * The root of every exception the SDK throws, so a plugin can catch the SDK's failures
 * without catching its own. Messages never carry secrets (keys, tokens, passwords).
 */
class AutohealException extends \RuntimeException
{
}
