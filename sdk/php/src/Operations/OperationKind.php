<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Operations;

/** The closed set of operation kinds, and which kinds undo which (rule 19 of the protocol). */
final class OperationKind
{
    public const ADD_COLUMN = 'add_column';
    public const DROP_COLUMN = 'drop_column';
    public const SET_CONFIG = 'set_config';
    public const UNSET_CONFIG = 'unset_config';
    public const NOTIFY_MERCHANT = 'notify_merchant';

    public const ALL = [self::ADD_COLUMN, self::DROP_COLUMN, self::SET_CONFIG, self::UNSET_CONFIG, self::NOTIFY_MERCHANT];

    private function __construct()
    {
    }

    /**
     * The kinds a rollback may use to undo a declared kind: drop_column undoes add_column,
     * either config kind undoes either; a notification has no inverse.
     *
     * @return list<string>
     */
    public static function inverses(string $kind): array
    {
        switch ($kind) {
            case self::ADD_COLUMN:
                return [self::DROP_COLUMN];
            case self::SET_CONFIG:
            case self::UNSET_CONFIG:
                return [self::SET_CONFIG, self::UNSET_CONFIG];
            default:
                return [];
        }
    }
}
