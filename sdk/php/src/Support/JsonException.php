<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Support;

use Autoheal\Sdk\AutohealException;

/** Bytes that are not the JSON they should be, or a value that cannot be encoded. */
final class JsonException extends AutohealException
{
}
