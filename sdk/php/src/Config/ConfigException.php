<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

use Autoheal\Sdk\AutohealException;

/** The plugin's configuration cannot be read or changed. */
final class ConfigException extends AutohealException
{
}
