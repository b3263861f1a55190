<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Cli;

use Autoheal\Sdk\AutohealException;

/** The command line itself is wrong (exit status 2). */
final class UsageError extends AutohealException
{
}
