<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Time;

use Autoheal\Sdk\AutohealException;

/** A string that is not an RFC 3339 UTC timestamp. */
final class InvalidTimestamp extends AutohealException
{
}
