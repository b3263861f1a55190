<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\AutohealException;

/** A 2xx answer that is not in the documented shape (a proxy's page, a server of another version). */
final class ProtocolException extends AutohealException
{
}
