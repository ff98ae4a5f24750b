class Boom(BaseException):
    pass


raise Boom('no')
